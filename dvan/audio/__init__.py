"""Audio front end: files and recordings -> MFCC features."""
