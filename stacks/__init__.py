"""Deployable stacks; each composes constructs from `constructs/` and takes its inputs as arguments."""
