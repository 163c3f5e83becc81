"""Runtime: where the code runs. Process groups under torchrun (`distributed`) and the device and dtype a
model is placed on (`placement`).

May import: third-party libraries only (and `workbench.runtime` itself).
"""
