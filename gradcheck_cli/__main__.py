from .cli import main

if __name__ == "__main__":   # a guard: --jobs starts processes that import this module
    main()
