"""Models, one per file. Import each from its own module (a stage that imports
one family does not run, nor depend on, the others' files); the families by
name: ``components.models.registry``; the RBMs by unit types:
``components.models.rbms``."""
