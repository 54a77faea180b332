"""The offline side of the emotion monitor: AI Hub preparation, label rules, the fixture, fitting,
evaluation, stacking, reports and the default head's rebuild. It runs on `core` (every model's
inference side, bundles) and never imports the streamer.
"""
