"""The offline demo models, built here on CPU from nothing but the persona files.

No machine reaches a model hub, so playhouse makes its own small models: a synthetic
corpus in the tag grammar (:mod:`~playhouse.demo.corpus`), small models trained from
scratch (:mod:`~playhouse.demo.tinymodels`: a BPE tokenizer, a GPT-2, a tiny Stable
Diffusion pipeline), and the build that turns a cast into a folder of models, cached by
config hash (:mod:`~playhouse.demo.build`). Serving (:mod:`playhouse.generation`) never
imports this package; it loads whatever folder a persona's ``model`` names.
"""
