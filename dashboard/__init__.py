"""The workbench's web dashboard (Dash). It only calls ecgcore; it computes nothing itself."""
