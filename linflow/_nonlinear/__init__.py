"""Beyond linear networks: two-layer ReLU teacher-student, lazy vs feature learning, Langevin dynamics."""
