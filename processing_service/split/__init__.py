"""split: probe and normalize the upload with ffmpeg, plan and cut chunks."""
