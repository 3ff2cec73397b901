from tickbase.cli import main

# Guarded: a spawned process (a real-time shard) imports this module as __mp_main__.
if __name__ == "__main__":
    main()
