"""`kubectl kdag`: a kubectl plugin for kdag workflows and runs."""
