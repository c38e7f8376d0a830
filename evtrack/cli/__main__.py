from evtrack.cli.main import main

main()
