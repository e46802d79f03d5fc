"""The frame geometry every backend shares: raw Atari screens in, 84x84 grey frames out."""

RAW_HEIGHTS = (210, 250)  # ALE screens: most games 210 rows, a few 250
RAW_WIDTH = 160
OUT_SIDE = 84
OUT_SHAPE = (OUT_SIDE, OUT_SIDE)
LAYOUTS = ("crop", "full")  # crop: the book chapter's ProcessFrame84; full: baselines' WarpFrame
# The order of max-pool and grey: "rgb" pools RGB screens, then takes luma (the book chapter, Nature DQN);
# "grey" pools ALE's grey screens (gymnasium's AtariPreprocessing, Dopamine).
POOLS = ("rgb", "grey")
CROP_ROWS, CROP_FIRST = 110, 18  # crop resizes to 84x110 and keeps rows 18..101
