"""A plugin that tries to take the built-in name 'random'."""

from albench import strategies


@strategies.register("random")
class AnotherRandom:
    """Clashes with the built-in."""

    def select(self, ctx, budget):
        return ctx.unlabelled[:budget]
