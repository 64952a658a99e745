from dit3d.cli import main

main()
