from tickbase.cli import main

main()
