"""Publishing: the final MP4, the delivery speech, the curve plot and captions."""

from __future__ import annotations

from models.identity import EngineIdentity, describe
from models.vocabulary import COLOR_PARTS, load_vocabulary, vocabulary_table

# the declared version; the identity adds digests of the code, the plot colours and ffmpeg's build
PUBLISHER_NAME = "ffmpeg-h264-aac"
PUBLISHER_VERSION = "1.1"  # 1.1: loudness-normalised delivery speech, wav/mp3/m4a


class Publisher:
    """The publish stage's engine: delivery speech, muxing, curve plot and captions (models.publish.*)."""

    name = PUBLISHER_NAME
    version = PUBLISHER_VERSION

    def identity(self) -> EngineIdentity:
        return describe(
            self,
            tables=[vocabulary_table(load_vocabulary(), *COLOR_PARTS)],
            modules=(
                "models.publish.audio",
                "models.publish.video",
                "models.publish.plot",
                "models.publish.captions",
            ),
            packages=("imageio-ffmpeg", "matplotlib"),
        )
