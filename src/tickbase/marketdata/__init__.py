"""Market data: bar files, bundled sample series and the technical indicators over them."""
