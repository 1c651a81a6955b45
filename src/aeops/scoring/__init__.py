"""The scoring core: raw rows → preprocessing → network → score, in one place.

`preprocess` (the train-fitted scaler: raw rows in, validated), `rule` (the scoring rule and its
kNN term, applied), `fit` (the rule fitted once on validation rows), `profile` (the reference a
batch is compared with), `bundle` (the saved model: all of the above and the network), `scorer`
(a bundle applied to a table), `batch` (files in chunks through a logged model) and `reference`
(which model a command means). Evaluation, serving, monitoring, compression, registry and export
depend on this package and not on each other; it depends only on `models`, `errors` and `io`.
"""
