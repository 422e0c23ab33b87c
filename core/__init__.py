"""The torch-free foundation every package builds on.

``errors`` (one root, the kinds a user can fix), ``cli`` (the plumbing every command shares),
``files`` (atomic writes, hashes), ``config`` (``ModelConfig``, ``Preprocessing``),
``preprocessing`` (the one image-preprocessing definition) and ``facts`` / ``manifest`` (what an
artifact says about itself). Nothing here imports torch or another package of this project.
"""
