"""Strategy plugins that ship with fedplug (installed as ``fedplug_strategies``).

They register under the ``fedplug.strategies`` entry-point group exactly as a third
party's plugins do; see the "Writing a plugin" section of the README.
"""
