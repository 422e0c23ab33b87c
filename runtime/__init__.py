"""Runs deployment artifacts in production; imports without torch unless the torch backend is used."""
