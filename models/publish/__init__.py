"""Publishing: the final MP4, the curve plot and captions."""

# goes into the publish step's cache key; bump when the published files change
PUBLISHER_NAME = "ffmpeg-h264-aac"
PUBLISHER_VERSION = "1.0"
