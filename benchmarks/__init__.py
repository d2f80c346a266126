"""Speed and memory of mmembed against the reference libraries, measured in one process."""
