"""Understanding the query beside the audio branch (no Qt).

* :mod:`dvan.query.transcribe` offline speech recognition of a spoken query (faster-whisper, tiny.en)
* :mod:`dvan.query.text`       frozen sentence encoder + trained projection W_T into the fusion query space
(:mod:`dvan.train.text` trains W_T against a frozen audio model's gallery projections; :mod:`dvan.packages`
says where the recogniser's, sentence encoder's and VAD's weights are installed.)

Every model here loads lazily, on first use, so importing this package costs nothing.
"""
