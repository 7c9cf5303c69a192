from factory.cli.main import entry

entry()
