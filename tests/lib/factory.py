"""The body of a factory fixture, shared by the test suites (tests/e2e, tests/acme)."""


def made_until_teardown(create, end):
    """Generator body of a factory fixture: yields make(*args, **kw), which returns
    create(*args, **kw) and remembers it; at teardown, end(x) is called on everything
    made, in the order it was made. A create() that raises leaves nothing to end."""
    made = []

    def make(*args, **kw):
        x = create(*args, **kw)
        made.append(x)
        return x

    yield make
    for x in made:
        end(x)
