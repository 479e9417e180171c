"""Fixed landmark indices of the MediaPipe 468-point face mesh that the renderer needs by name.

These are properties of the mesh topology (the same for every face), not tuning: tunable tables live in
prompts/facs.yaml and prompts/visemes.yaml. "R" is the image-left side (the subject's right).
"""

from __future__ import annotations

# Eye corners define the face frame: origin between the eye centres, unit = inter-ocular distance.
EYE_R_CORNERS = (33, 133)
EYE_L_CORNERS = (263, 362)

# Lip contours, each from the image-left corner to the image-right corner.
LIP_OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIP_OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
LIP_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIP_INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
# Rings of the lip body between the outer and inner contours (the mesh has two per lip).
LIP_UPPER_RINGS = (
    (76, 184, 74, 73, 72, 11, 302, 303, 304, 408, 306),
    (62, 183, 42, 41, 38, 12, 268, 271, 272, 407, 292),
)
LIP_LOWER_RINGS = ((96, 89, 179, 86, 15, 316, 403, 319, 325), (77, 90, 180, 85, 16, 315, 404, 320, 307))
MOUTH_CORNERS = (61, 291)
LIP_INNER_MID = (13, 14)  # upper and lower inner lip at the centre

# Eyelids, each from the outer to the inner corner.
EYE_R_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)
EYE_R_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
EYE_L_UPPER = (263, 466, 388, 387, 386, 385, 384, 398, 362)
EYE_L_LOWER = (263, 249, 390, 373, 374, 380, 381, 382, 362)
# The ring of skin just above each upper lid (the crease), outer to inner.
EYE_R_CREASE = (247, 30, 29, 27, 28, 56, 190)
EYE_L_CREASE = (467, 260, 259, 257, 258, 286, 414)
# The next ring up (upper-lid skin below the brow), outer to inner.
EYE_R_LID_SKIN = (113, 225, 224, 223, 222, 221, 189)
EYE_L_LID_SKIN = (342, 445, 444, 443, 442, 441, 413)

# Face outline, clockwise from the top of the forehead.
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
CHIN = 152
NOSE_TIP = 1

# Face regions for expression statistics (the naturalness measure, the detector's gain per region).
FACE_REGIONS: dict[str, tuple[int, ...]] = {
    "brows": (70, 63, 105, 66, 107, 46, 53, 52, 65, 55, 300, 293, 334, 296, 336, 276, 283, 282, 295, 285),
    "upper_lids": EYE_R_UPPER[1:-1] + EYE_L_UPPER[1:-1],
    "lower_lids": EYE_R_LOWER[1:-1] + EYE_L_LOWER[1:-1],
    "cheeks": (50, 101, 36, 205, 187, 123, 117, 118, 280, 330, 266, 425, 411, 352, 346, 347),
    "mouth_corners": MOUTH_CORNERS,
    "lips": LIP_OUTER_UPPER[1:-1] + LIP_OUTER_LOWER[1:-1] + LIP_INNER_UPPER[1:-1] + LIP_INNER_LOWER[1:-1],
    "jaw": (152, 148, 176, 149, 150, 377, 400, 378, 379, 175, 199, 200),
}
