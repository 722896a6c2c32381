"""The builder: takes deploy requests in order, builds the artifact and the plan."""
