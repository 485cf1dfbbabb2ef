import numpy as np
import a_module_that_does_not_exist_anywhere


class Layer:
    pass
