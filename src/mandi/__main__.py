from mandi.cli import main

main()
