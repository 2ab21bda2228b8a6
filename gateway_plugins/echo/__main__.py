from gateway_plugins.echo.app import main

main()
