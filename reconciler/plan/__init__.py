"""Planning: the dependency graph (``graph``), desired-versus-recorded differences (``diff``), quota
(``quota``), the planner (``planner.make_plan``), and the plan itself as plain data (``types``), which
knows nothing of how it is made."""
