from streamem.cli import main

main()
