"""The torch-free foundation every package builds on.

``errors`` (one root, the kinds a user can fix), ``cli`` (the plumbing every command shares),
``files`` (atomic writes, JSON, hashes), ``config`` (``ModelConfig``, ``Preprocessing``),
``preprocessing`` (the one image-preprocessing definition), ``scores`` (logits → probabilities)
and ``facts`` / ``manifest`` (what an artifact says about itself). Nothing here imports torch or
another package of this project.
"""
