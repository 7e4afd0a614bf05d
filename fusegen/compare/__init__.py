"""`fusegen compare`: train small classifiers with several cells, deploy each with fusegen and
report accuracy, size and speed against the stock `unroll=True` conversion.

    cells.py     --cells names -> CellSpec (built-in or FILE.py:Class), checked up front
    train.py     Input(T, F) -> RNN(cell) -> Dense(classes, softmax), seeded and deterministic
    deploy.py    convert, verify, deployed accuracy (C core + Dense head), the measured C model
    stock.py     the stock converter on the same model with unroll=True (in a child process)
    targets.py   where inference time is measured: the `Target` interface, host, qemu-* (every
                 target of fusegen/bench/targets.py), port
    cache.py     finished cells by content hash
    run.py       one cell end to end, failures kept in its rows
    report.py    summary.csv, summary.md, tradeoff.png, training.png, the terminal table
    cli.py       the `fusegen compare` subcommand
"""
