

SPLITS = ("train", "val")  # the splits every data set has (here: the runtime reads it without torch)
