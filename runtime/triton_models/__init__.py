"""The Python-backend models of a Triton repository written by ``export.triton_repo``.

Each ``model.py`` in the repository imports its ``TritonPythonModel`` from here, so the server runs
this toolkit's one preprocessing definition, its runners and its score rules. These modules import
``triton_python_backend_utils``, which exists only inside Triton's Python backend.
"""
