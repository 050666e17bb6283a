"""Beyond linear networks: ReLU teacher-student, lazy vs feature learning, Langevin dynamics."""
