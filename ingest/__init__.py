"""From receiver bytes to clean vessel reports.

Sources deliver lines; :class:`ingest.ingestor.Ingestor` frames them, verifies checksums,
reads tag blocks and timestamps, assembles multipart groups, drops duplicates heard by
several receivers and decodes with pyais into :class:`ingest.report.Report`.
"""
