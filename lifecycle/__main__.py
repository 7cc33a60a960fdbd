from lifecycle.launch import main

main()
