"""`python -m factory.axolotl_survey [DIR]`: the share of Axolotl configs that validate, and the refusals by
capability (default DIR: ../shared/data/axolotl_examples). The survey itself is factory/cli/axolotl_survey.py."""

import sys

from factory.cli.axolotl_survey import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
