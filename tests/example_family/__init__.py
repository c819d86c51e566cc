"""A seventh event family, as docs/adding-a-family.md builds one, kept tiny: it counts reports per
category. tests/test_adding_a_family.py installs it the way an operator's package would (an entry point)
and checks the platform picks up every part of it without a line changed in bot/."""
