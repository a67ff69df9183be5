"""Neural-network building blocks shared by both model families."""
