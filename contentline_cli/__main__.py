from contentline_cli.app import main

main()
