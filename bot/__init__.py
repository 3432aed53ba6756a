"""srebot core: configuration, dispatcher, engine, approvals, answers and the composition root."""
