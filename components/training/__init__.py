"""Training: the one loop (``loop``), the recipes that run through it (``pretrain``,
``finetune``, the zoo's ``family``) and the only module that talks to Ray
(``runtime``: Ray Train jobs, checkpoints, progress). Import each from its module."""
