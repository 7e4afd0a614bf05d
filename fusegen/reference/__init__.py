"""The numpy twins: the float and integer interpreters of the IR that specify every kernel."""
