"""TensorRT, Polygraphy-style: the ONNX parser's and DLA's support tables (:mod:`.support`), the readiness
checker (:mod:`.check`), engine build, load and run with the INT8 calibrator (:mod:`.engine`), and the trtexec
command writer (:mod:`.trtexec`).

TensorRT itself is imported only when an engine is built or run, so all of this imports where it is absent.
"""
