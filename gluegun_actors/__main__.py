"""`python -m gluegun_actors`: the `gluegun` command line (see `gluegun_actors._cli`)."""

from gluegun_actors._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
