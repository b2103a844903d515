from copytrade.cli import main

main()
