"""Everything that talks to Kafka through the client library (aiokafka).

``fetch``: the guard between the broker's fetch responses and the client's record
parser (codecs, bounded decompression, header bounds, skip-by-offset of what cannot
be parsed).
"""
