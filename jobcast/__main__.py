from jobcast.cli.commands import main

main()
