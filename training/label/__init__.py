"""Teacher labelling: turn real, unlabelled footage into landmark datasets our readers read.

``python -m training.label pose|face SOURCES... --out DIR`` runs a strong float teacher on
every (subsampled) frame and writes what :mod:`training.data` already reads: MPII-style JSON
(MPII-16) and COCO keypoints JSON (COCO-17) for bodies, 300W ``.pts`` files (iBUG-68) for
faces. The teachers are MediaPipe's published models (BlazePose, the face mesh), taken from
the ``mediapipe`` 0.10.21 wheel into the user cache (:mod:`.teacher_models`) and run in the
same stock TFLite runtime the device uses. Nothing here imports TensorFlow.
"""
