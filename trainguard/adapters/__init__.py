"""Adapters: the only modules that import a framework. They turn tensors into statistics and carry out actions."""
