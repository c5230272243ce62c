"""Click commands, one module per capability; edgecnn/cli.py registers them."""
