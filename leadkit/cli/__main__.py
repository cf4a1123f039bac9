from leadkit.cli import main

main()
